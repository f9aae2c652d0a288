"""Item text -> language-model vectors, for the models' text channel and the interest
classifier."""
