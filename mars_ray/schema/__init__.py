"""The bottom layer, where every other layer meets: the event schema, session phases, the
clock, reject reasons, the validation of config files and the bounds of prices and sizes
(``quantities``). It imports nothing of the project's; everything else may import it."""
