"""``--workers N``: a supervisor process and the N worker processes it forks, restarts and drains.

A *worker* in this project always means one such process; it is never a thread or a task.
"""
