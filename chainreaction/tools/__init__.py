"""Operator tools: the ``chainreaction`` command line and what it runs beside the store.

``cli`` (the console script), ``cluster`` (local clusters of real processes), ``demo``,
``clusterstats`` (``stats --cluster``, ``wan cut/heal``), ``jepsen`` (fault injection with
recorded histories), ``bench`` and ``bench_load`` (load and raw baselines, ``baselines``).
They sit apart from the store's core (``chainreaction/``): nothing in the core, the
frontend and proxy cores or the simulator imports them (tests/test_layering.py).
"""
