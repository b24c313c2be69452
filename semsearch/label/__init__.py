"""Stage 3, labelling: scores or texts into labels, from a few labelled examples.

- :mod:`.threshold`: :class:`~semsearch.ThresholdLabeler`: a threshold on scores, calibrated.
- :mod:`.setfit`: :class:`~semsearch.SetFitLabeler`: SetFit's body tuning and a description-aware head.
- :mod:`.zeroshot`: :class:`~semsearch.ZeroShotLabeler`: no examples, the closest label description.
- :mod:`.tuning`: the body's tuning towards label descriptions or prototypes; :mod:`.crossfit`: the temperature.
- :mod:`.reliability`: reliability diagrams (accuracy against confidence) and their ECE.
- :mod:`.documents`: ``semsearch label``: labelling every document of an index or a file, resumably.
"""
