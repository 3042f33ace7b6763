"""The use cases - one per action a door can ask for (decide, resume, replay, what-if, impact, publish and
approve) - and the composition root (`runtime.py`) that builds everything a process runs on from its config."""
