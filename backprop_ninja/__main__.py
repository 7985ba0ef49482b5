from backprop_ninja.cli import console_main

console_main()
