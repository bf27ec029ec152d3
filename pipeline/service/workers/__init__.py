"""Several processes for one service (`service.workers` > 1): the supervisor
(`supervisor`), a worker process's side (`child`), the control socket between them
(`control`) and the config rewrite (`plan`). Imported only when workers > 1."""
