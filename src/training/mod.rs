//! Training: the loop, its options and evaluation (`train`); a session as the page and
//! `resnet train` run it (`session`); a trained model made ready for new data (`finetune`);
//! a new classifier trained on kept embeddings (`transfer`); and each layer's gradient
//! norms (`gradient_flow`). Uses every folder below it (`inference`, `data`, `weights`,
//! `resnet`, `ops`) and `error`.

pub mod finetune;
pub mod gradient_flow;
pub mod session;
pub mod train;
pub mod transfer;
