"""The spam classifier: tokenizer, Bayes model, persistence, learning and evaluation."""
