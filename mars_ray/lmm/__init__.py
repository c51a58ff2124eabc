"""The Large Market Model: tokenizer, corpus, order model, training and checkpoints."""
