"""`PYTHONPATH=bench python3 -m lzbench --mode short|full --locust PATH ...`
(bench/bench.sh runs it)."""

from .cli import main

if __name__ == "__main__":
    main()
