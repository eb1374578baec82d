"""Console output and status as RE Manager publishes them: one subscriber among all workers
(:mod:`.ingest`), kept in Redis streams (:mod:`.keys`), fanned out in each worker (:mod:`.hub`),
and rendered as a terminal shows it (:mod:`.render`, :mod:`.console`)."""
