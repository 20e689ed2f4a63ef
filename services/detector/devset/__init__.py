"""The real-footage development set: hand labels per clip, replay, and scores."""
