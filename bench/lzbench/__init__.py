"""Lanzadera benchmark harness, run through bench/bench.sh (`make bench`,
`make bench-full`), which starts the stack, builds and installs the load
tools first.

Starts release frontend / workers / observer processes from target/release
on a namespace of their own (topics, consumer groups, MongoDB database,
named by `lanzadera-testkit namespace` and created by `lanzadera-provision`),
like the e2e tests do, runs seven scenarios and measures, for every process,
the CPU seconds and the peak RSS from /proc while the scenario runs:

  1. API read load: many users polling their job (wrk, closed loop), and the
     classic Locust scenario (N users spawned at R per second) against its
     pass line (errors < 1 %, p95 < 1 s).
  2. Submission load: POST /api/addJob at full speed with 2 workers draining;
     accepted jobs/s, then the accounting of every accepted job (none lost,
     none run twice).
  3. Job latency on an idle system: trivial jobs one at a time.
  4. Scaling: the same batch of sleeping jobs with 1, 2 and 4 workers of one
     slot, and 1 worker of 4 slots, against the ideal makespan.
  4b. Mixed load: Poisson arrivals of short and long jobs on 4 workers; the
     short jobs' queue wait against an ideal shared FIFO queue.
  4c. Recovery from kill -9: a running job's worker killed, and the time
     until the job runs again on another (the observer's lease).
  5. Elasticity: a burst, and the time until the observer's webhook decision.

Reading order: cli (the run), run (its state), scenarios/ (one module per
scenario), platform (the processes under test), measure (/proc), client
(HTTP), stats, report (+ report.md.tmpl), selftest (the report, offline).

Only Python's standard library: the harness must not need the load tool's
virtual environment.
"""
