//! Gradient checks of every layer: the hand-derived backward of each layer (and of the blocks that
//! chain them) against central finite differences of its forward pass, in f64, for the input and for
//! every parameter. Shapes are small and odd; BN runs in training mode throughout.

use resnet_cuda::backend::PoolGeometry;
use resnet_cuda::nn::{
    BatchNorm2d, Block, BlockSpec, BottleneckStride, Conv2d, ConvBn, ConvBnSpec, GlobalAvgPool,
    Layer, Linear, MaxPool2d, Mode, ShortcutOption, SoftmaxCrossEntropy,
};
use resnet_cuda::tensor::Tensor;

use super::common::{numel, permutation, read, seeded, uniform, Cpu};
use super::kinks::{check_robust, Sampling};

/// The values of every parameter of a layer, in visiting order.
fn param_values(be: &Cpu, layer: &mut dyn Layer<Cpu>) -> Vec<(String, Vec<f64>, Vec<f64>)> {
    let mut out = Vec::new();
    layer.visit_params(&mut |p| out.push((p.name.clone(), read(be, &p.value), read(be, &p.grad))));
    out
}

fn set_param(be: &Cpu, layer: &mut dyn Layer<Cpu>, index: usize, values: &[f64]) {
    let mut i = 0;
    layer.visit_params(&mut |p| {
        if i == index {
            p.value.copy_from_slice(be, values).unwrap();
        }
        i += 1;
    });
}

/// Checks a layer's input gradient and every parameter gradient against finite differences of
/// `L = sum(y * r)` for fixed random `r`, then returns the number of parameters checked.
fn check_layer(
    what: &str,
    layer: &mut dyn Layer<Cpu>,
    x_dims: &[usize],
    x_data: Vec<f64>,
    seed: u64,
) -> usize {
    let be = Cpu::new();
    let mut rng = seeded(seed);
    let mut x = Tensor::from_slice(&be, x_dims, &x_data).unwrap();
    layer.forward(&be, &x, Mode::Train).unwrap();
    let y_dims = layer.output().dims().to_vec();
    let r = uniform(&mut rng, numel(&y_dims), -1.0, 1.0);
    let dy = Tensor::from_slice(&be, y_dims.as_slice(), &r).unwrap();
    layer.backward(&be, &x, &dy).unwrap();
    let dx = read(&be, layer.input_grad());
    let params = param_values(&be, layer);

    check_robust(
        &format!("{what}: input"),
        &x_data,
        &r,
        &dx,
        Sampling::All,
        |p| {
            x.copy_from_slice(&be, p).unwrap();
            layer.forward(&be, &x, Mode::Train).unwrap();
            read(&be, layer.output())
        },
    );
    x.copy_from_slice(&be, &x_data).unwrap();
    for (index, (name, values, grad)) in params.iter().enumerate() {
        check_robust(
            &format!("{what}: {name}"),
            values,
            &r,
            grad,
            Sampling::All,
            |p| {
                set_param(&be, layer, index, p);
                layer.forward(&be, &x, Mode::Train).unwrap();
                read(&be, layer.output())
            },
        );
        set_param(&be, layer, index, values);
    }
    params.len()
}

fn input(seed: u64, dims: &[usize]) -> Vec<f64> {
    uniform(&mut seeded(seed), numel(dims), -2.0, 2.0)
}

#[test]
fn conv2d_layer() {
    let be = Cpu::new();
    let mut rng = seeded(1);
    for (kernel, stride, dims) in [
        (3, 1, [2, 5, 7, 3]),
        (3, 2, [1, 7, 6, 4]),
        (1, 2, [2, 5, 5, 3]),
        (7, 2, [1, 9, 9, 3]),
    ] {
        let mut conv = Conv2d::new(&be, "conv", dims[3], 5, kernel, stride, &mut rng).unwrap();
        let n = check_layer(
            &format!("conv{kernel}x{kernel}/{stride}"),
            &mut conv,
            &dims,
            input(2, &dims),
            3,
        );
        assert_eq!(n, 1);
    }
}

#[test]
fn batch_norm_layer_with_and_without_relu() {
    let be = Cpu::new();
    for relu in [false, true] {
        let mut bn = BatchNorm2d::new(&be, "bn", 5, relu).unwrap();
        // Non-trivial affine parameters, so that gamma and beta enter the check.
        bn.weight
            .value
            .copy_from_slice(&be, &[0.5, 1.5, -0.7, 1.1, 2.0])
            .unwrap();
        bn.bias
            .value
            .copy_from_slice(&be, &[0.1, -0.3, 0.4, 0.0, -0.2])
            .unwrap();
        let dims = [3, 3, 5, 5];
        assert_eq!(
            check_layer(
                &format!("bn relu={relu}"),
                &mut bn,
                &dims,
                input(4, &dims),
                5
            ),
            2
        );
    }
}

#[test]
fn conv_bn_relu_unit() {
    let be = Cpu::new();
    let spec = ConvBnSpec {
        in_ch: 3,
        out_ch: 4,
        kernel: 3,
        stride: 2,
        relu: true,
    };
    let mut unit = ConvBn::new(&be, "conv1", "bn1", spec, &mut seeded(6)).unwrap();
    let dims = [2, 7, 5, 3];
    assert_eq!(
        check_layer("conv+bn+relu", &mut unit, &dims, input(7, &dims), 8),
        3
    );
}

fn basic(
    in_ch: usize,
    out_ch: usize,
    stride: usize,
    shortcut: Option<ShortcutOption>,
) -> Block<Cpu> {
    let spec = BlockSpec {
        in_ch,
        out_ch,
        stride,
        shortcut,
    };
    Block::basic(&Cpu::new(), "layer1.0", spec, &mut seeded(9)).unwrap()
}

#[test]
fn basic_block_identity_shortcut() {
    let dims = [2, 5, 5, 4];
    assert_eq!(
        check_layer(
            "basic identity",
            &mut basic(4, 4, 1, Some(ShortcutOption::A)),
            &dims,
            input(10, &dims),
            11
        ),
        6
    );
}

#[test]
fn basic_block_option_a_stride_2() {
    let dims = [2, 7, 5, 3];
    // Option A adds no parameters: two convs, two BNs.
    assert_eq!(
        check_layer(
            "basic option A",
            &mut basic(3, 5, 2, Some(ShortcutOption::A)),
            &dims,
            input(12, &dims),
            13
        ),
        6
    );
}

#[test]
fn basic_block_option_b_stride_2() {
    let dims = [1, 6, 7, 3];
    // Option B adds the projection conv and its BN.
    assert_eq!(
        check_layer(
            "basic option B",
            &mut basic(3, 4, 2, Some(ShortcutOption::B)),
            &dims,
            input(14, &dims),
            15
        ),
        9
    );
}

#[test]
fn plain_block() {
    let dims = [2, 6, 6, 3];
    assert_eq!(
        check_layer(
            "plain",
            &mut basic(3, 4, 2, None),
            &dims,
            input(16, &dims),
            17
        ),
        6
    );
}

#[test]
fn bottleneck_blocks() {
    let be = Cpu::new();
    for (stride_at, stride, in_ch) in [
        (BottleneckStride::OnReduce, 2, 5),
        (BottleneckStride::On3x3, 2, 5),
        (BottleneckStride::OnReduce, 1, 8),
    ] {
        let spec = BlockSpec {
            in_ch,
            out_ch: 8,
            stride,
            shortcut: Some(ShortcutOption::B),
        };
        let mut block =
            Block::bottleneck(&be, "layer2.0", spec, stride_at, &mut seeded(18)).unwrap();
        let dims = [2, 5, 6, in_ch];
        let expected = if stride == 1 && in_ch == 8 { 9 } else { 12 };
        let what = format!("bottleneck {stride_at:?} stride {stride} in {in_ch}");
        assert_eq!(
            check_layer(&what, &mut block, &dims, input(19, &dims), 20),
            expected
        );
    }
}

#[test]
fn global_avg_pool_layer() {
    let be = Cpu::new();
    let dims = [3, 3, 5, 4];
    check_layer(
        "gap",
        &mut GlobalAvgPool::new(&be).unwrap(),
        &dims,
        input(21, &dims),
        22,
    );
}

#[test]
fn max_pool_layer() {
    let be = Cpu::new();
    let dims = [2, 7, 6, 3];
    // Distinct values a permutation apart: every window has a unique maximum, so the max pool is
    // differentiable at these points and finite differences are valid.
    let x: Vec<f64> = permutation(&mut seeded(23), numel(&dims))
        .iter()
        .map(|v| v * 0.01)
        .collect();
    let geom = PoolGeometry {
        window: 3,
        stride: 2,
        pad: 1,
    };
    check_layer(
        "maxpool",
        &mut MaxPool2d::new(&be, geom).unwrap(),
        &dims,
        x,
        24,
    );
}

#[test]
fn linear_layer() {
    let be = Cpu::new();
    let mut fc = Linear::new(&be, "fc", 7, 5, &mut seeded(25)).unwrap();
    let dims = [3, 7];
    assert_eq!(check_layer("fc", &mut fc, &dims, input(26, &dims), 27), 2);
}

#[test]
fn softmax_cross_entropy_layer() {
    let be = Cpu::new();
    let mut loss = SoftmaxCrossEntropy::new(&be).unwrap();
    let logits_data = input(28, &[4, 7]);
    let labels = [3, 0, 6, 3];
    let mut logits = Tensor::from_slice(&be, [4, 7], &logits_data).unwrap();
    loss.forward_backward(&be, &logits, &labels).unwrap();
    let analytic = read(&be, loss.logits_grad());
    check_robust(
        "softmax cross-entropy",
        &logits_data,
        &[1.0],
        &analytic,
        Sampling::All,
        |p| {
            logits.copy_from_slice(&be, p).unwrap();
            vec![loss.forward_backward(&be, &logits, &labels).unwrap().loss]
        },
    );
}
