"""Stage 3, labelling: scores or texts into labels, from a few labelled examples.

- :mod:`.threshold`: :class:`~semsearch.ThresholdLabeler`: a threshold on scores, calibrated.
- :mod:`.setfit`: :class:`~semsearch.SetFitLabeler`: SetFit's body tuning and a description-aware head.
- :mod:`.tuning`: the body's tuning on label descriptions; :mod:`.crossfit`: the temperature.
- :mod:`.documents`: ``semsearch label``: labelling every document of an index or a file, resumably.
"""
