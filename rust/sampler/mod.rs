//! sampler (being written).
