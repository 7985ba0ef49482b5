from backprop_ninja.cli import main

raise SystemExit(main())
