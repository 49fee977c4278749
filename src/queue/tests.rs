//! Tests of the queue state machine (filled in below).
