// WeightSync module.
