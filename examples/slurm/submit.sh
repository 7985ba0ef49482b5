#!/usr/bin/env bash
# Grade a class on Slurm in SHARDS shards, then merge them:
#   examples/slurm/submit.sh CLASS OUT [SHARDS [sbatch options for the shards...]]
# e.g. examples/slurm/submit.sh /shared/course/submitted /shared/course/out/grades 8 --partition=short
# Submits grade_class.sbatch as a job array of SHARDS tasks, and `backprop-ninja merge OUT` as a job that starts
# once every task has succeeded (and is cancelled if one fails). The logs go to OUT/.batch/slurm/.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CLASS OUT [SHARDS [sbatch options...]]" >&2
    exit 2
fi
class=$1
out=$2
shards=${3:-4}
shift $(($# < 3 ? $# : 3))
here=$(cd "$(dirname "$0")" && pwd)
ninja=${BACKPROP_NINJA:-backprop-ninja}
logs=$out/.batch/slurm
mkdir -p "$logs"
array=$(sbatch --parsable --array=1-"$shards" --output="$logs/grade-%A_%a.out" "$@" \
    "$here/grade_class.sbatch" "$class" "$out")
array=${array%%;*}  # --parsable prints "jobid" or "jobid;cluster"
merge=$(sbatch --parsable --job-name=backprop-ninja-merge --dependency=afterok:"$array" --kill-on-invalid-dep=yes \
    --output="$logs/merge-%j.out" --wrap "$(printf '%q ' "$ninja" merge "$out")")
echo "shards: job array $array ($shards tasks); merge: job ${merge%%;*}; logs in $logs"
