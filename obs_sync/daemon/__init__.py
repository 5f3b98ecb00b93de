"""``obs-sync run``: the schedule (pure: :mod:`.schedule`), the job one fire time runs
(:mod:`.job`) and the long-running process around them (:mod:`.daemon`: APScheduler,
signals, health, metrics)."""
