"""``keysync batch``: dub a catalogue listed in a manifest on local worker processes or a Ray cluster, each
worker loading the model once; a journal in the run folder makes a re-run skip finished jobs and retry the
rest (docs/batch.md)."""
