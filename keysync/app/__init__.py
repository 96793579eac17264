"""``keysync app``: a web page (Gradio) for dubbing, served on this machine."""
