// launch_constants.h: the block and tile sizes that kernels are written for and the Rust launch code
// must use, written once. build.rs reads every `constexpr int kName = value;` line here and emits
// `pub const NAME: u32 = value;` (kConvThreads -> CONV_THREADS) into
// resnet_cuda::backend::gpu::launch_constants, so the two sides cannot drift apart.
#ifndef RESNET_CUDA_LAUNCH_CONSTANTS_H
#define RESNET_CUDA_LAUNCH_CONSTANTS_H

// Implicit-GEMM convolutions (conv_common.cuh): block tile rows and columns, threads per block.
constexpr int kConvTileM = 64;
constexpr int kConvTileN = 64;
constexpr int kConvThreads = 256;

// Batch norm (batch_norm.cu): the partial kernels' block is (channels, row lanes); the finalize
// kernels' block is kBatchNormFinalizeThreads.
constexpr int kBatchNormChannels = 32;
constexpr int kBatchNormRowLanes = 8;
constexpr int kBatchNormFinalizeThreads = 128;

// softmax_cross_entropy_record's block, and the header words (unsigned) of a loss record before its
// slots: count, first non-finite + 1, and two spare words that keep the slots 16-byte aligned.
constexpr int kLossReduceThreads = 256;
constexpr int kLossRecordHeaderWords = 4;

// gemm_f32's square block tile and block edge.
constexpr int kGemmTile = 16;

// The bf16 memory-bound kernels (batch_norm_bf16.cu, elementwise_bf16.cu, pool_bf16.cu,
// shortcut_bf16.cu; launch geometry in src/backend/gpu/bf16_launch.rs): most threads per block (the
// statistics kernels' shared arrays are sized for it), and channels per 16-byte vector of bf16.
constexpr int kBf16Threads = 256;
constexpr int kBf16ChannelGroup = 8;

// A tensor-core forward that applies a batch norm + ReLU to its input as it stages it
// (conv_tc_bn_input.cuh): the most input channels its coefficient table holds. The table is the
// same size for every launch of a kernel (tc_bn_coefficient_bytes), so that each kernel's dynamic
// shared memory, and with it its opt-in above 48 KiB, does not change with the layer; 512 covers
// every BN inside the blocks of the ResNets (the bottleneck widths 64 to 512).
constexpr int kTcBnTableChannels = 512;

// The wgmma convolutions fed by TMA (conv_wgmma.cuh): the dynamic shared memory a launch adds to the
// tile's for the pipeline's mbarriers (8 bytes each: one a stage, up to 8 stages, or with the
// producer warp a full and an empty one a stage, up to 4 stages).
constexpr int kWgmmaTmaBarrierBytes = 64;

// The threads a launch of a wgmma kernel with a producer (conv_wgmma.cuh's
// TcWgmmaWarpSpecializedPipeline) has beyond its tile's, after the consumers' warpgroups: one warp
// for the tiles at most kWgmmaProducerWarpMaxTileN wide (BN), whose accumulators leave room for the
// extra warp's share of the registers; a warpgroup for wider tiles, which hands its registers to the
// consumers (setmaxnreg).
constexpr int kWgmmaProducerThreads = 32;
constexpr int kWgmmaProducerWarpgroupThreads = 128;
constexpr int kWgmmaProducerWarpMaxTileN = 128;

// A batch built from stored images (input.cu, `Backend::image_batch`): floats per sample in the
// draw table, (image, dy, dx, mirror, shift_r, shift_g, shift_b).
constexpr int kImageDrawWidth = 7;

#endif
