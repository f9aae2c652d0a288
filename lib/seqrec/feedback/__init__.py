"""What shoppers did with the recommendations: online metrics, arms, simulated responses."""
