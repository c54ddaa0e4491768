"""cvrank's Pusher: TFX's Pusher with atomic, recorded pushes (see serving/pushes.py)."""
