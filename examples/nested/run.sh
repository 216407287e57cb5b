#!/bin/sh
# Writes output/<run>/tables/*.csv and output/<run>/logs/notes.txt: the
# worker uploads every file with its relative path.
set -eu
run="${1:-default}"
mkdir -p "output/$run/tables" "output/$run/logs"
for n in 1 2 3; do
  printf 'n,square\n%s,%s\n' "$n" "$((n * n))" > "output/$run/tables/table-$n.csv"
done
echo "run $run with $# argument(s)" > "output/$run/logs/notes.txt"
echo "wrote output/$run"
