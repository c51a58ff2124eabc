"""The bottom layer, where every other layer meets: the event schema, session phases, the
clock, reject reasons and the validation of config files. It imports nothing of the
project's; everything else may import it."""
