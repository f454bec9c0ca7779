//! Tile sweep of the bf16 tensor-core convolutions: for every distinct convolution of resnet50 at
//! batch 256 and resnet20 at batch 128, each pass (forward, backward-data, backward-filter) with
//! every tile of `conv_tc_plan::TcTile::ALL` (and Hopper's wgmma tiles `TcTile::HOPPER` where the GPU
//! has them), the achieved TFLOP/s, next to the tile the plan picks.
//! What it is for: choosing `conv_tc_plan`'s tiles from measurements in one short device call (the
//! criterion suite needs about a second a figure; this needs a few milliseconds).
//!
//! `RESNET_BENCH_DEVICE=cuda cargo bench --bench tc_tiles` (a GPU is required: anywhere else it
//! says so and exits non-zero). `--json PATH` also writes every figure as JSON. Each figure is the
//! median of 5 timed batches of launches (each batch ended by a device synchronisation and at least
//! 2 ms long) after a warm-up; the loader is the 16-byte `cp.async` one where the shape allows,
//! the general one otherwise (as the plan chooses), and backward-filter uses the plan's split rule
//! for each tile. The C = 3 stems are timed as the backend runs them: widened to 8 channels.
//! `RESNET_BENCH_TILES=mma` leaves the wgmma tiles out (`RESNET_BENCH_TMA=off` their `+tma` rows
//! below; `RESNET_TMA_PRODUCER=0` times the TMA-fed kernels without their producer warp). The forward also times each wgmma tile fed by
//! TMA: the weights by the tensor memory accelerator (`conv2d_wgmma_tma_forward_*`, the tile
//! `wgmma{T}+tma`), and the input too, as tiled boxes for the 1x1 stride-1 shapes
//! (`conv2d_wgmma_tma_pointwise_forward_*`, `+tma-pw`) and through an im2col map where C is a
//! multiple of the tile's depth (`conv2d_wgmma_tma_im2col_forward_*`, `+tma-i2c`); and backward-data
//! and backward-filter of the 1x1 stride-1 shapes with both operands by TMA
//! (`conv2d_wgmma_tma_pointwise_backward_{data,filter}_*`) likewise, `+tma`, and backward-data of
//! the other stride-1 shapes with dy through an im2col map
//! (`conv2d_wgmma_tma_im2col_backward_data_*`) and backward-filter of the others with C % 64 == 0
//! with x through one (`conv2d_wgmma_tma_im2col_backward_filter_*`), `+tma-i2c`. The pass
//! `backward_data_bn` is backward-data with the batch-norm backward sums in its epilogue (BN's own ReLU; kernels/conv_tc_bn_grad.cuh) on
//! the tiles that have it: against `backward_data`, what that epilogue costs. The passes
//! `forward_bnrelu` and `backward_filter_bnrelu` are the forward (with the statistics epilogue) and
//! backward-filter whose input is a BN + ReLU applied as the operand is staged
//! (kernels/conv_tc_bn_input.cuh), on the tiles that have them: against `forward_stats` (timed for
//! those tiles too) and `backward_filter`, what applying BN in the load costs (the pass it removes,
//! BN's normalising read and write of the activation, is not in this table).

use std::process::ExitCode;
use std::time::Instant;

use resnet_cuda::backend::gpu::conv_plan::ConvShape as GpuConvShape;
use resnet_cuda::backend::gpu::conv_tc_plan::{self as plan, TcFilterLaunch, TcLaunch, TcTile};
use resnet_cuda::backend::gpu::driver::open_driver;
use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::{DevicePtr, Driver, DynDriver};
use resnet_cuda::bench::{BenchDevice, KernelPlan};
use resnet_cuda::{Error, Result};

/// The `_bn_` kernels' mask argument for BN's own ReLU (kernels/conv_tc_bn_grad.cuh, TcBnMask).
const MASK_FROM_AFFINE: usize = 2;

/// Device memory for one shape's tensors (contents: zeros; the timing does not depend on values).
struct Buffers<'d> {
    driver: &'d DynDriver,
    allocations: Vec<(DevicePtr, usize)>,
}

impl<'d> Buffers<'d> {
    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        let bytes = bytes.max(256);
        let ptr = self.driver.alloc(bytes)?;
        // SAFETY: just allocated with this size.
        unsafe { self.driver.memset_zero(ptr, bytes)? };
        self.allocations.push((ptr, bytes));
        Ok(ptr)
    }
}

impl Drop for Buffers<'_> {
    fn drop(&mut self) {
        for &(ptr, bytes) in &self.allocations {
            // SAFETY: allocated by this driver with this size, freed once.
            unsafe { self.driver.free(ptr, bytes) };
        }
    }
}

/// Seconds per call of `launch_all` (one pass), the median of 5 timed batches.
fn time_pass(driver: &DynDriver, mut launch_all: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        launch_all()?;
    }
    driver.synchronize()?;
    // Enough calls a batch for about 2 ms, so that the synchronisation's cost does not count.
    let start = Instant::now();
    launch_all()?;
    driver.synchronize()?;
    let once = start.elapsed().as_secs_f64().max(1e-6);
    let calls = ((2e-3 / once).ceil() as usize).clamp(1, 200);
    let mut samples = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..calls {
            launch_all()?;
        }
        driver.synchronize()?;
        samples.push(start.elapsed().as_secs_f64() / calls as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[2])
}

/// Opts `l`'s kernel in to its shared memory once, before it is timed (the attribute call would
/// otherwise add host time to every timed launch of the tiles above 48 KiB).
/// Seconds a launch of the TMA-fed `fed` takes ([`time_pass`]): its tensor maps over the weights at
/// `w` and the A operand's activation at `a` encoded once, appended to `args()` at every launch.
fn time_fed(
    driver: &DynDriver,
    fed: &TcLaunch,
    w: DevicePtr,
    a: DevicePtr,
    args: impl Fn() -> KernelArgs,
) -> Result<f64> {
    let maps = fed.encode_maps(driver, w, a).collect::<Result<Vec<_>>>()?;
    prepare(driver, fed)?;
    time_pass(driver, || {
        launch(
            driver,
            fed,
            maps.iter().fold(args(), |l, m| l.tensor_map(m)),
        )
    })
}

/// The buffers a backward-filter pass reads and writes: x, dy, the split's fp32 workspace and dw
/// (`count` floats).
struct FilterBuffers {
    x: DevicePtr,
    dy: DevicePtr,
    workspace: DevicePtr,
    dw: DevicePtr,
    count: usize,
}

/// Seconds a backward-filter pass `f` takes ([`time_pass`]): its partial kernel with params
/// `(x, dy, out)` then `rest(..)` (and its tensor maps over x and dy, encoded once, if it is fed by
/// TMA), then its reduce when split.
fn time_filter(
    driver: &DynDriver,
    f: &TcFilterLaunch,
    b: &FilterBuffers,
    rest: impl Fn(KernelArgs) -> KernelArgs,
) -> Result<f64> {
    let maps = f
        .partial
        .encode_maps(driver, b.x, b.dy)
        .collect::<Result<Vec<_>>>()?;
    prepare(driver, &f.partial)?;
    let target = if f.reduce.is_some() {
        b.workspace
    } else {
        b.dw
    };
    time_pass(driver, || {
        let args = rest(KernelArgs::new().ptr(b.x).ptr(b.dy).ptr(target));
        let args = maps.iter().fold(args, |a, m| a.tensor_map(m));
        launch(driver, &f.partial, args)?;
        if let Some(reduce) = &f.reduce {
            let args = KernelArgs::new()
                .ptr(b.workspace)
                .ptr(b.dw)
                .int(f.splits)
                .u64(b.count);
            launch(driver, reduce, args)?;
        }
        Ok(())
    })
}

fn prepare(driver: &DynDriver, l: &TcLaunch) -> Result<()> {
    if l.needs_shared_opt_in() {
        driver.set_max_dynamic_shared(l.kernel, l.shared_bytes)?;
    }
    Ok(())
}

fn launch(driver: &DynDriver, l: &TcLaunch, mut args: KernelArgs) -> Result<()> {
    let mut params = args.params();
    // RESNET_TMA_PRODUCER=0, as the backend: the TMA-fed kernels without their producer warp.
    let l = if std::env::var_os("RESNET_TMA_PRODUCER").is_some_and(|v| v == "0") {
        l.without_producer()
    } else {
        *l
    };
    // SAFETY: the arguments are the kernel's documented parameters (see conv_tc_plan), pointing at
    // buffers sized for the shape; the launch geometry is the plan's.
    unsafe { driver.launch(l.kernel, l.grid, l.block, l.shared_bytes, &mut params) }
}

struct Figure {
    model: &'static str,
    shape: String,
    pass: &'static str,
    tile: String,
    planned: bool,
    tflops: f64,
}

fn tile_name(t: TcTile) -> String {
    t.name().to_string()
}

fn sweep_shape(
    driver: &DynDriver,
    model: &'static str,
    s: &resnet_cuda::bench::ConvShape,
    out: &mut Vec<Figure>,
) -> Result<()> {
    // A channel count that is not a multiple of 8 (the stems) is widened with zero channels to the
    // next one, as the backend does (src/backend/gpu/bf16_convolution.rs), so the vector kernels
    // are what is timed; the widening pass is not, and the FLOP count stays the real shape's.
    let channels = s.in_channels.div_ceil(8) * 8;
    let shape = GpuConvShape {
        x: [s.batch, s.height, s.width, channels],
        w: [s.out_channels, s.kernel, s.kernel, channels],
        y: s.output_dims(),
        geom: s.geometry(),
    };
    let elems = |d: [usize; 4]| d.iter().product::<usize>();
    let mut bufs = Buffers {
        driver,
        allocations: Vec::new(),
    };
    let x = bufs.alloc(elems(shape.x) * 2)?;
    let w = bufs.alloc(elems(shape.w) * 2)?;
    let y = bufs.alloc(elems(shape.y) * 2)?;
    let dw = bufs.alloc(elems(shape.w) * 4)?;
    let dims = shape.dims();
    let flops = s.flops() as f64;
    let general_fwd = !plan::forward_vectorizable(&shape);
    let general_bwd = !plan::backward_vectorizable(&shape);
    let planned = (
        plan::forward(&shape).kernel,
        plan::backward_data(&shape, false).kernel,
        plan::backward_filter(&shape).partial.kernel,
    );
    // A tile without the general loader (TcTile::loaders) sits out the shapes that need it.
    let has = |t: TcTile, general: bool| t.loaders().contains(&general);
    // Hopper's wgmma tiles where this device has their kernels (compute capability 9.0; `info` in
    // the device script says which device ran), unless RESNET_BENCH_TILES=mma leaves them out (the
    // device script does when their tests failed: a faulting kernel would end the whole sweep).
    let with_hopper = std::env::var("RESNET_BENCH_TILES").map_or(true, |v| v != "mma");
    // And the `+tma` rows (kernels fed by the tensor memory accelerator) unless RESNET_BENCH_TMA=off
    // leaves them out (the device script does when their tests failed).
    let with_tma = std::env::var("RESNET_BENCH_TMA").map_or(true, |v| v != "off");
    let hopper = TcTile::HOPPER
        .into_iter()
        .filter(|&t| with_hopper && driver.has_kernel(plan::forward_with(&shape, t, false).kernel));
    let tiles: Vec<TcTile> = TcTile::ALL.into_iter().chain(hopper).collect();
    let max_workspace = tiles
        .iter()
        .filter(|&&t| has(t, general_bwd))
        .map(|&t| {
            plan::backward_filter_with(&shape, t, general_bwd, plan::filter_splits(&shape, t))
        })
        .map(|f| f.workspace_bytes)
        .max()
        .unwrap_or(0);
    let workspace = bufs.alloc(max_workspace)?;
    // The BN of the fused backward-data: its input (x's shape), four per-channel vectors (zeros,
    // like every buffer here: the timing does not depend on values), and the largest partials.
    let planned_bn = plan::backward_data_bn_for(&shape, plan::TcFamily::MmaSync).map(|l| l.kernel);
    let bn_x = bufs.alloc(elems(shape.x) * 2)?;
    let mut bn_params = [0; 4];
    for p in &mut bn_params {
        *p = bufs.alloc(channels * 4)?;
    }
    let max_partials = tiles
        .iter()
        .filter_map(|&t| plan::backward_data_bn_with(&shape, t))
        .map(|l| plan::bn_grad_partials(&l, channels) * 4)
        .max()
        .unwrap_or(0);
    let partials = bufs.alloc(max_partials)?;
    let stats = bufs.alloc(plan::forward_stats_partition(shape.y).floats() * 4)?;
    let planned_stats = plan::forward_stats(&shape).kernel;
    let planned_bnrelu = (
        plan::forward_stats_bnrelu_for(&shape, plan::TcFamily::MmaSync).map(|l| l.kernel),
        plan::backward_filter_bnrelu_for(&shape, plan::TcFamily::MmaSync).map(|f| f.partial.kernel),
    );
    for tile in tiles.iter().copied().filter(|&t| has(t, general_fwd)) {
        let fwd = plan::forward_with(&shape, tile, general_fwd);
        prepare(driver, &fwd)?;
        let secs = time_pass(driver, || {
            launch(
                driver,
                &fwd,
                KernelArgs::new().ptr(x).ptr(w).ptr(y).value(&dims),
            )
        })?;
        out.push(Figure {
            model,
            shape: s.label(),
            pass: "forward",
            tile: tile_name(tile),
            planned: fwd.kernel == planned.0,
            tflops: flops / secs / 1e12,
        });
        // A Hopper tile's forward again fed by TMA (`RESNET_TC_KERNELS=wgmma-tma`), once per feed
        // that applies: `{name}+tma` the weights alone, `+tma-pw` with the pointwise input's boxes,
        // `+tma-i2c` with the input through an im2col map.
        for feed in plan::TcFeed::ALL {
            if !with_tma || !tile.is_hopper() || general_fwd || !feed.applies(&shape, tile) {
                continue;
            }
            let fed = plan::forward_tma_fed(&shape, tile, false, feed);
            let secs = time_fed(driver, &fed, w, x, || {
                KernelArgs::new().ptr(x).ptr(w).ptr(y).value(&dims)
            })?;
            let suffix = match feed {
                plan::TcFeed::Weights => "+tma",
                plan::TcFeed::Pointwise => "+tma-pw",
                plan::TcFeed::Im2col => "+tma-i2c",
            };
            out.push(Figure {
                model,
                shape: s.label(),
                pass: "forward",
                tile: format!("{}{suffix}", tile_name(tile)),
                planned: false,
                tflops: flops / secs / 1e12,
            });
        }
        // With BN + ReLU applied as the input is staged (the inner-block case), where the tile has
        // that kernel, beside the same tile's statistics kernel, which it extends.
        if let Some(fused) = plan::forward_stats_bnrelu_with(&shape, tile).filter(|_| !general_fwd)
        {
            let (plain, _) = plan::forward_stats_with(&shape, tile, false);
            for (pass, l, with_bn) in [
                ("forward_stats", plain, false),
                ("forward_bnrelu", fused, true),
            ] {
                prepare(driver, &l)?;
                let secs = time_pass(driver, || {
                    let args = KernelArgs::new().ptr(x).ptr(w).ptr(y).ptr(stats);
                    let args = if with_bn {
                        bn_params.iter().fold(args, |a, &p| a.ptr(p))
                    } else {
                        args
                    };
                    launch(driver, &l, args.value(&dims))
                })?;
                out.push(Figure {
                    model,
                    shape: s.label(),
                    pass,
                    tile: tile_name(tile),
                    planned: if with_bn {
                        Some(l.kernel) == planned_bnrelu.0
                    } else {
                        l.kernel == planned_stats
                    },
                    tflops: flops / secs / 1e12,
                });
            }
        }
    }
    for tile in tiles.iter().copied().filter(|&t| has(t, general_bwd)) {
        let bwd = plan::backward_data_with(&shape, false, tile, general_bwd);
        prepare(driver, &bwd)?;
        let secs = time_pass(driver, || {
            launch(
                driver,
                &bwd,
                KernelArgs::new().ptr(y).ptr(w).ptr(x).value(&dims),
            )
        })?;
        out.push(Figure {
            model,
            shape: s.label(),
            pass: "backward_data",
            tile: tile_name(tile),
            planned: bwd.kernel == planned.1,
            tflops: flops / secs / 1e12,
        });
        // Backward-data on a Hopper tile again with both operands by TMA: a 1x1 shape's tiled
        // boxes (`+tma`), a stride-1 shape's dy through an im2col map (`+tma-i2c`).
        let fed = if !with_tma || !tile.is_hopper() || general_bwd {
            None
        } else if plan::backward_data_pointwise_applies(&shape) {
            Some((plan::backward_data_tma_with(&shape, false, tile), "+tma"))
        } else if plan::backward_data_im2col_applies(&shape, tile) {
            Some((
                plan::backward_data_im2col_with(&shape, false, tile),
                "+tma-i2c",
            ))
        } else {
            None
        };
        if let Some((fed, suffix)) = fed {
            let secs = time_fed(driver, &fed, w, y, || {
                KernelArgs::new().ptr(y).ptr(w).ptr(x).value(&dims)
            })?;
            out.push(Figure {
                model,
                shape: s.label(),
                pass: "backward_data",
                tile: format!("{}{suffix}", tile_name(tile)),
                planned: false,
                tflops: flops / secs / 1e12,
            });
        }
        // With the batch-norm backward sums in the epilogue (kernels/conv_tc_bn_grad.cuh; BN's own
        // ReLU, the inner-block case), where the tile has that kernel: what the epilogue costs.
        if let Some(fused) = plan::backward_data_bn_with(&shape, tile).filter(|_| !general_bwd) {
            prepare(driver, &fused)?;
            let secs = time_pass(driver, || {
                let args = KernelArgs::new()
                    .ptr(y)
                    .ptr(w)
                    .ptr(x)
                    .ptr(0)
                    .ptr(bn_x)
                    .ptr(bn_params[0])
                    .ptr(bn_params[1])
                    .ptr(bn_params[2])
                    .ptr(bn_params[3])
                    .int(MASK_FROM_AFFINE)
                    .ptr(0)
                    .ptr(partials)
                    .value(&dims);
                launch(driver, &fused, args)
            })?;
            out.push(Figure {
                model,
                shape: s.label(),
                pass: "backward_data_bn",
                tile: tile_name(tile),
                planned: Some(fused.kernel) == planned_bn,
                tflops: flops / secs / 1e12,
            });
        }
        let filter = plan::backward_filter_with(
            &shape,
            tile,
            general_bwd,
            plan::filter_splits(&shape, tile),
        );
        let buffers = FilterBuffers {
            x,
            dy: y,
            workspace,
            dw,
            count: elems(shape.w),
        };
        let secs = time_filter(driver, &filter, &buffers, |args| args.value(&dims))?;
        out.push(Figure {
            model,
            shape: s.label(),
            pass: "backward_filter",
            tile: format!("{} z{}", tile_name(tile), filter.splits),
            planned: filter.partial.kernel == planned.2,
            tflops: flops / secs / 1e12,
        });
        // Backward-filter on a Hopper tile again with both operands by TMA: a pointwise shape's
        // panels (`+tma`), x through an im2col map where C % 64 == 0 (`+tma-i2c`).
        let fed = if !with_tma || !tile.is_hopper() || general_bwd {
            None
        } else if plan::is_pointwise(&shape) {
            Some((
                plan::backward_filter_tma_with(&shape, tile, filter.splits),
                "+tma",
            ))
        } else if plan::backward_filter_im2col_applies(&shape) {
            Some((
                plan::backward_filter_im2col_with(&shape, tile, filter.splits),
                "+tma-i2c",
            ))
        } else {
            None
        };
        if let Some((fed, suffix)) = fed {
            let secs = time_filter(driver, &fed, &buffers, |args| args.value(&dims))?;
            out.push(Figure {
                model,
                shape: s.label(),
                pass: "backward_filter",
                tile: format!("{}{suffix} z{}", tile_name(tile), fed.splits),
                planned: false,
                tflops: flops / secs / 1e12,
            });
        }
        // The same with BN + ReLU applied as x is staged, where the tile has that kernel.
        let fused = plan::backward_filter_bnrelu_with(&shape, tile, filter.splits);
        if let Some(fused) = fused.filter(|_| !general_bwd) {
            let secs = time_filter(driver, &fused, &buffers, |args| {
                bn_params.iter().fold(args, |a, &p| a.ptr(p)).value(&dims)
            })?;
            out.push(Figure {
                model,
                shape: s.label(),
                pass: "backward_filter_bnrelu",
                tile: format!("{} z{}", tile_name(tile), fused.splits),
                planned: Some(fused.partial.kernel) == planned_bnrelu.1,
                tflops: flops / secs / 1e12,
            });
        }
    }
    Ok(())
}

/// One line per (shape, pass): the plan's tile and its TFLOP/s, the best tile and its TFLOP/s, and
/// the best wgmma tile (Hopper) against the best mma.sync one.
fn print_table(figures: &[Figure]) {
    println!(
        "| model | shape | pass | planned tile | TFLOP/s | best tile | TFLOP/s | planned/best \
         | best wgmma/best mma.sync |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut i = 0;
    while i < figures.len() {
        let key = (figures[i].model, &figures[i].shape, figures[i].pass);
        let group: Vec<&Figure> = figures[i..]
            .iter()
            .take_while(|f| (f.model, &f.shape, f.pass) == key)
            .collect();
        i += group.len();
        let best_of = |wgmma: bool| {
            group
                .iter()
                .filter(|f| f.tile.starts_with("wgmma") == wgmma)
                .map(|f| f.tflops)
                .max_by(f64::total_cmp)
        };
        let families = match (best_of(true), best_of(false)) {
            (Some(w), Some(m)) => format!("{:.2}", w / m),
            _ => "–".to_string(),
        };
        let best = group.iter().max_by(|a, b| a.tflops.total_cmp(&b.tflops));
        let planned = group.iter().find(|f| f.planned);
        if let (Some(best), Some(planned)) = (best, planned) {
            println!(
                "| {} | {} | {} | {} | {:.1} | {} | {:.1} | {:.2} | {families} |",
                key.0,
                key.1,
                key.2,
                planned.tile,
                planned.tflops,
                best.tile,
                best.tflops,
                planned.tflops / best.tflops
            );
        }
    }
}

fn run() -> Result<()> {
    if BenchDevice::from_env()? != BenchDevice::Cuda {
        return Err(Error::Config(
            "tc_tiles times the tensor-core kernels on a GPU: run it with RESNET_BENCH_DEVICE=cuda"
                .into(),
        ));
    }
    let json_path = {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == "--json")
            .and_then(|i| args.get(i + 1).cloned())
    };
    let driver = open_driver("cuda")?;
    let kernel_plan = KernelPlan::for_device(BenchDevice::Cuda)?;
    let mut figures = Vec::new();
    // Sorted by pass within a shape, so that the table groups them.
    for &(model, shape) in &kernel_plan.convs {
        let wanted = (model.starts_with("resnet50") && shape.batch == 256)
            || (model.starts_with("resnet20") && shape.batch == 128);
        if !wanted {
            continue;
        }
        let mut shape_figures = Vec::new();
        sweep_shape(&driver, model, &shape, &mut shape_figures)?;
        shape_figures.sort_by_key(|f| f.pass);
        figures.extend(shape_figures);
    }
    print_table(&figures);
    if let Some(path) = json_path {
        let rows: Vec<serde_json::Value> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "model": f.model, "shape": f.shape, "pass": f.pass, "tile": f.tile,
                    "planned": f.planned, "tflops": f.tflops,
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows).expect("figures serialise");
        std::fs::write(&path, text).map_err(resnet_cuda::error::io_error(&path))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
