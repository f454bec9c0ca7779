mod common;
mod kinks;
mod layers;
mod networks;
mod ops;
