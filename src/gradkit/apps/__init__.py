"""The front-ends built on gradkit: the ``gradkit`` command (:mod:`~gradkit.apps.cli`) and its jobs.

* :mod:`~gradkit.apps.train_job`: ``gradkit train``, an MLP on a data set or a user's table;
* :mod:`~gradkit.apps.compare`: ``gradkit compare``, softmax against its alternatives over seeds;
* :mod:`~gradkit.apps.tabular`: reading a user's CSV or ``.npz`` table, every decision reported;
* :mod:`~gradkit.apps.bench`: ``gradkit bench``, speed and memory against the peers in one run
  (harness, cases, report); :mod:`~gradkit.apps.bench_distributed` for the Dask trainer.

Nothing here is imported by ``import gradkit``: the library's core does not depend on its applications.
"""
