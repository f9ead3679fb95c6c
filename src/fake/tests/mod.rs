//! Tests of the model, driven through raw register writes and the platform's MMIO hook, the way
//! the driver reaches the model.

mod cmdq;
mod control;
mod queues;
mod strtab;
mod util;
