"""Process plumbing shared by the fork backend and ``--workers``: forking children, dying with the parent, CPUs."""
