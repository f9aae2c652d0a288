"""Interest classifier: item (or query) text -> interest category, and filling the items that
have none.

- :mod:`~seqrec.interests.datasets`: the Beauty and Scientific readers, any items table, hash
  samples and splits, the classifier's text of an item.
- :mod:`~seqrec.interests.labels`: categories cut to a depth -> classes, rare classes, accuracy
  and macro-F1 (no torch).
- :mod:`~seqrec.interests.config`: what to train and how (:class:`InterestConfig`), and the
  training job's command line.
- :mod:`~seqrec.interests.classifier`: the softmax head over the sentence encoder, saved as
  data only.
- :mod:`~seqrec.interests.fit`: the L-BFGS linear probe, fine-tuning, train-and-evaluate.
- :mod:`~seqrec.interests.tracking`: a trained classifier's MLflow run.
- :mod:`~seqrec.interests.fill`: missing item categories predicted on Spark.

Interest *profiles* (a user's categories weighted by recency) need no classifier: they live in
:mod:`seqrec.serve.profiles`.
"""
