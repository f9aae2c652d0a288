"""A registered model -> recommendations: the saved model and its loader, batch scoring into
Delta, interest profiles and the showcase (``jobs/score.py``, ``jobs/show_recommendations.py``)."""
