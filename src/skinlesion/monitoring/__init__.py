"""Model monitoring: image-aware drift detection, model quality on labelled traffic, retraining.

Modules: ``features`` (per-image statistics), ``drift`` (PSI, KS, MMD, chi-square, Holm),
``baseline`` (the reference a monitor compares against), ``window`` (captured requests to
images and predictions), ``quality`` (ground truth joined on eventId), ``monitor`` (the
decision), ``violations`` and ``report`` (outputs), ``cloudwatch``, ``notify`` and ``retrain``
(what happens after an alarm), ``sagemaker`` (the monitor as a processing job), ``steps`` (the
component bodies) and ``commands`` (``skinlesion monitor``). Importing this package does no work.
"""
