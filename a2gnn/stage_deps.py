"""``python -m a2gnn.stage_deps [--write]``: the entry point of :mod:`a2gnn.pipeline.stage_deps` under its
short name (prints and checks what each DVC stage reads; ``--write`` rewrites the code deps in dvc.yaml)."""

from a2gnn.pipeline.stage_deps import main

if __name__ == "__main__":
    raise SystemExit(main())
