//! Input rules shared by the domain events (being written).
