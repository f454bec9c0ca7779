//! Every launch that can compute a pass of a shape in place of the plan's: what the convolution
//! tuner (`conv_tuning.rs`, `RESNET_CONV_TUNING=1`) times on the device to keep the fastest.
//!
//! A candidate takes exactly the plan's kernel arguments (the kernels of a pass share them: the
//! module header's table; the tensor maps are appended by `TcLaunch::encode_maps` for whichever
//! launch runs) and writes the same outputs in the same layout. That rules out tiles of other block
//! rows (BM) for the passes with a batch-norm epilogue: the forward's statistics partition and
//! backward-data's BN partials follow BM, and their consumers (the BN finalize kernels) were sized
//! by the plan's. The tiles are those of the backend's kernel family (the mma.sync tiles always; the
//! wgmma tiles for `Wgmma` and `WgmmaTma`; the TMA feeds for `WgmmaTma` alone), so a family the user
//! chose keeps excluding the kernels it excludes. Shapes on the general (element-gather) loader keep
//! the plan's launch alone. Whether a device has a candidate's kernel is the tuner's question
//! (`Driver::has_kernel`), not the plan's.

use super::super::conv_plan::ConvShape;
use super::{
    backward_data_bn_for, backward_data_bn_im2col_with, backward_data_bn_tma_with,
    backward_data_bn_with, backward_data_for, backward_data_im2col_applies,
    backward_data_im2col_with, backward_data_pointwise_applies, backward_data_tma_with,
    backward_data_with, backward_filter_bnrelu_for, backward_filter_bnrelu_im2col_with,
    backward_filter_bnrelu_tma_with, backward_filter_bnrelu_with, backward_filter_for,
    backward_filter_im2col_applies, backward_filter_im2col_with, backward_filter_tma_with,
    backward_filter_with, backward_vectorizable, bn_grad_partials, filter_splits, forward_for,
    forward_stats_bnrelu_for, forward_stats_bnrelu_tma_fed, forward_stats_bnrelu_with,
    forward_stats_for, forward_stats_partition, forward_stats_with, forward_tma_fed,
    forward_vectorizable, forward_with, is_pointwise, TcFamily, TcFeed, TcFilterLaunch, TcLaunch,
    TcTile,
};

/// A convolution pass as the backend runs it, with the epilogue or prologue its kernel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcPass {
    Forward,
    /// Forward with the batch-norm statistics partials in its epilogue.
    ForwardStats,
    /// [`TcPass::ForwardStats`] of the output of a BN + ReLU applied as the input is staged.
    ForwardStatsBnRelu,
    BackwardData,
    /// Backward-data plus an addend (the residual's gradient).
    BackwardDataAdd,
    /// Backward-data with the BN backward partials in its epilogue.
    BackwardDataBn,
    BackwardFilter,
    /// Backward-filter of the output of a BN + ReLU applied as x is staged.
    BackwardFilterBnRelu,
}

impl TcPass {
    pub fn name(self) -> &'static str {
        match self {
            TcPass::Forward => "forward",
            TcPass::ForwardStats => "forward_stats",
            TcPass::ForwardStatsBnRelu => "forward_stats_bnrelu",
            TcPass::BackwardData => "backward_data",
            TcPass::BackwardDataAdd => "backward_data_add",
            TcPass::BackwardDataBn => "backward_data_bn",
            TcPass::BackwardFilter => "backward_filter",
            TcPass::BackwardFilterBnRelu => "backward_filter_bnrelu",
        }
    }
}

/// The tiles of `family`: mma.sync's, then Hopper's for the wgmma families.
fn family_tiles(family: TcFamily) -> impl Iterator<Item = TcTile> {
    let hopper = if family.is_hopper() {
        &TcTile::HOPPER[..]
    } else {
        &[]
    };
    TcTile::ALL.into_iter().chain(hopper.iter().copied())
}

/// Pushes `launch` unless an equal one is there already (the plan's, met again in the sweep).
fn push_new<L: PartialEq>(out: &mut Vec<L>, launch: Option<L>) {
    if let Some(l) = launch.filter(|l| !out.contains(l)) {
        out.push(l);
    }
}

/// The plan's launch for the forward or backward-data `pass` of `shape` (`forward_for`,
/// `backward_data_bn_for`, ...), `None` where it has no kernel for the pass. Panics for a
/// backward-filter pass ([`planned_filter_launch`]).
pub fn planned_launch(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Option<TcLaunch> {
    match pass {
        TcPass::Forward => Some(forward_for(shape, family)),
        TcPass::ForwardStats => Some(forward_stats_for(shape, family)),
        TcPass::ForwardStatsBnRelu => forward_stats_bnrelu_for(shape, family),
        TcPass::BackwardData => Some(backward_data_for(shape, false, family)),
        TcPass::BackwardDataAdd => Some(backward_data_for(shape, true, family)),
        TcPass::BackwardDataBn => backward_data_bn_for(shape, family),
        TcPass::BackwardFilter | TcPass::BackwardFilterBnRelu => {
            panic!(
                "{}: a backward-filter pass has planned_filter_launch",
                pass.name()
            )
        }
    }
}

/// The plan's launch for the backward-filter `pass` of `shape`, `None` where it has no kernel for
/// the pass. Panics for the other passes ([`planned_launch`]).
pub fn planned_filter_launch(
    pass: TcPass,
    shape: &ConvShape,
    family: TcFamily,
) -> Option<TcFilterLaunch> {
    match pass {
        TcPass::BackwardFilter => Some(backward_filter_for(shape, family)),
        TcPass::BackwardFilterBnRelu => backward_filter_bnrelu_for(shape, family),
        _ => panic!("{}: not a backward-filter pass", pass.name()),
    }
}

/// The launches that compute the forward or backward-data `pass` of `shape`: the plan's for
/// `family` first, then the others (module doc); empty where the plan has no kernel for the pass
/// (a `_bnrelu` or `_bn` pass the shape does not fuse). Panics for a backward-filter pass
/// ([`filter_candidates`]).
pub fn launch_candidates(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Vec<TcLaunch> {
    let Some(planned) = planned_launch(pass, shape, family) else {
        return Vec::new();
    };
    let mut out = vec![planned];
    let forward = matches!(
        pass,
        TcPass::Forward | TcPass::ForwardStats | TcPass::ForwardStatsBnRelu
    );
    let vector = if forward {
        forward_vectorizable(shape)
    } else {
        backward_vectorizable(shape)
    };
    if !vector {
        return out;
    }
    let tma = family.weights_by_tma();
    let stats_rows = forward_stats_partition(shape.y).tile_rows;
    let bn_partials = bn_grad_partials(&planned, shape.x[3]);
    for tile in family_tiles(family) {
        let hopper_tma = tma && tile.is_hopper();
        let feeds = TcFeed::ALL
            .into_iter()
            .filter(|&feed| hopper_tma && feed.applies(shape, tile));
        match pass {
            TcPass::Forward => {
                push_new(&mut out, Some(forward_with(shape, tile, false)));
                for feed in feeds {
                    push_new(&mut out, Some(forward_tma_fed(shape, tile, false, feed)));
                }
            }
            TcPass::ForwardStats if tile.bm() == stats_rows => {
                push_new(&mut out, Some(forward_stats_with(shape, tile, false).0));
                for feed in feeds {
                    push_new(&mut out, Some(forward_tma_fed(shape, tile, true, feed)));
                }
            }
            TcPass::ForwardStatsBnRelu if tile.bm() == stats_rows => {
                push_new(&mut out, forward_stats_bnrelu_with(shape, tile));
                for feed in feeds {
                    push_new(&mut out, forward_stats_bnrelu_tma_fed(shape, tile, feed));
                }
            }
            TcPass::BackwardData | TcPass::BackwardDataAdd => {
                let add = pass == TcPass::BackwardDataAdd;
                push_new(&mut out, Some(backward_data_with(shape, add, tile, false)));
                if hopper_tma && backward_data_pointwise_applies(shape) {
                    push_new(&mut out, Some(backward_data_tma_with(shape, add, tile)));
                } else if hopper_tma && backward_data_im2col_applies(shape, tile) {
                    push_new(&mut out, Some(backward_data_im2col_with(shape, add, tile)));
                }
            }
            TcPass::BackwardDataBn => {
                let same_partials = |l: &TcLaunch| bn_grad_partials(l, shape.x[3]) == bn_partials;
                push_new(
                    &mut out,
                    backward_data_bn_with(shape, tile).filter(same_partials),
                );
                if hopper_tma && backward_data_pointwise_applies(shape) {
                    push_new(
                        &mut out,
                        backward_data_bn_tma_with(shape, tile).filter(same_partials),
                    );
                } else if hopper_tma {
                    push_new(
                        &mut out,
                        backward_data_bn_im2col_with(shape, tile).filter(same_partials),
                    );
                }
            }
            _ => {}
        }
    }
    out
}

/// The launches that compute the backward-filter `pass` of `shape` (`BackwardFilter[BnRelu]`): the
/// plan's for `family` first, then every other tile's with the plan's split rule for that tile
/// (`filter_splits`) and, on Hopper tiles of `WgmmaTma`, its TMA feeds; empty where the plan has
/// no kernel for the pass. Panics for the other passes ([`launch_candidates`]).
pub fn filter_candidates(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Vec<TcFilterLaunch> {
    let Some(planned) = planned_filter_launch(pass, shape, family) else {
        return Vec::new();
    };
    let mut out = vec![planned];
    if !backward_vectorizable(shape) {
        return out;
    }
    let tma = family.weights_by_tma();
    for tile in family_tiles(family) {
        let splits = filter_splits(shape, tile);
        let hopper_tma = tma && tile.is_hopper();
        let pointwise = hopper_tma && is_pointwise(shape);
        let im2col = hopper_tma && !pointwise && backward_filter_im2col_applies(shape);
        if pass == TcPass::BackwardFilter {
            push_new(
                &mut out,
                Some(backward_filter_with(shape, tile, false, splits)),
            );
            if pointwise {
                push_new(
                    &mut out,
                    Some(backward_filter_tma_with(shape, tile, splits)),
                );
            } else if im2col {
                push_new(
                    &mut out,
                    Some(backward_filter_im2col_with(shape, tile, splits)),
                );
            }
        } else {
            push_new(&mut out, backward_filter_bnrelu_with(shape, tile, splits));
            if pointwise {
                push_new(
                    &mut out,
                    backward_filter_bnrelu_tma_with(shape, tile, splits),
                );
            } else if im2col {
                push_new(
                    &mut out,
                    backward_filter_bnrelu_im2col_with(shape, tile, splits),
                );
            }
        }
    }
    out
}
