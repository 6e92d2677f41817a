"""Runs over folders of photos: resumable, shardable, reported as they go.

=================  ============================================================
``bookkeeping``    done markers, throttled reports, error lines: what ``batch``
                   and ``eval-unmask`` share
``files``          the photos of a folder and their output folders
``batch``          :func:`run_batch` (``stylegan-unmask batch``)
``summary``        ``summary.csv`` / ``index.html`` of a batch run
``index_html``     the batch ``index.html`` page
``shards``         ``--shard i/n`` and torchrun: one share per process, merged
=================  ============================================================
"""
