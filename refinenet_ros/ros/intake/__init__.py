"""Frame intake: which camera frames are segmented and which are dropped (each counted once, with
its reason), how many frames are in flight, and whether a lone frame gone stale waits for the next
frame of its camera - chosen by label age on the live cameras. No ROS imports.

``store.py`` holds the pending frames, ``arrivals.py`` times each camera, ``rules.py`` states the
rules as pure functions, ``taking.py`` applies them under one lock, ``age.py`` measures label age
and ``trial.py`` is the live trial that chooses the mode (docs/node.md, "Frame intake")."""
