"""`lqa.summary` and `larq.models.summary` figures against counts computed by hand.

Conventions (larq): a binary kernel is 1-bit; every other weight (quantizer state included) is
32-bit; BatchNorm is counted as its 2 moving statistics (larq fuses gamma/beta). MACs:
kernel count x output pixels; `lqa.summary` adds the hyper-functions' FC MACs per image.
"""

import larq as lq
import pytest
import tensorflow as tf

import larq_adaptive as lqa

SIZE, CIN, COUT = 8, 32, 8  # 8x8 output (stride 1), 3x3 kernels
KERNEL = 3 * 3 * CIN * COUT  # 2304
PIXELS = SIZE * SIZE
BN = 2 * COUT  # moving mean + variance
DENSE = COUT * 10 + 10


def small_model(conv, activation):
    inp = tf.keras.Input((SIZE, SIZE, CIN))
    x = conv(inp)
    x = tf.keras.layers.BatchNormalization()(x)
    x = activation(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inp, tf.keras.layers.Dense(10)(x))


def adabin():
    return small_model(lqa.layers.AdaBinConv2D(COUT), lqa.layers.Maxout())


def reactnet():
    conv = lqa.layers.PaddedQuantConv2D(COUT, 3, input_quantizer=lqa.quantizers.RSign(),
                                        kernel_quantizer=lqa.quantizers.ReActNetWeightQuantizer(),
                                        use_bias=False)
    return small_model(conv, lqa.layers.RPReLU())


def dybnn():
    conv = lqa.layers.PaddedQuantConv2D(COUT, 3, input_quantizer=lqa.quantizers.DySign(),
                                        kernel_quantizer=lqa.quantizers.ReActNetWeightQuantizer(),
                                        use_bias=False)
    return small_model(conv, lqa.layers.DyPReLU())


# DySign on 32 channels, reduction 16: FC1 32->2 (+2 bias), FC2 2->32 (+32 bias), static bias 32.
DYSIGN_PARAMS = 32 + (32 * 2 + 2) + (2 * 32 + 32)
DYSIGN_MACS = 32 * 2 + 2 * 32
# DyPReLU on 8 channels: bias_in, bias_out, slopes (8 each); FC1 8->1 (+1), FC2 1->16 (+16).
DYPRELU_PARAMS = 3 * 8 + (8 * 1 + 1) + (1 * 16 + 16)
DYPRELU_MACS = 8 * 1 + 1 * 16

CASES = {
    # name: (builder, 32-bit params, exact 32-bit MACs, larq's own 32-bit MACs)
    "adabin": (adabin, 4 + BN + 2 * COUT + DENSE, 80, 80 + 4 * PIXELS),  # alpha, beta, ede_k, ede_t
    "reactnet": (reactnet, CIN + BN + 3 * COUT + DENSE, 80, 80),  # RSign `bias` is exempt in larq too
    "dybnn": (dybnn, DYSIGN_PARAMS + BN + DYPRELU_PARAMS + DENSE, 80 + DYSIGN_MACS + DYPRELU_MACS,
              80 + (32 * 2 + 2 * 32) * PIXELS),  # larq counts the FC kernels once per output pixel
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_summary_counts(name, capsys):
    builder, fp_params, exact_fp_macs, larq_fp_macs = CASES[name]
    model = builder()
    profile = lqa.summary(model)
    printed = capsys.readouterr().out
    assert "1-bit MACs" in printed and "Model size" in printed
    assert profile.weight_count(1) == KERNEL
    assert profile.weight_count(32) == fp_params
    assert profile.op_count("mac", 1) == KERNEL * PIXELS
    assert profile.op_count("mac", 32) == exact_fp_macs
    assert profile.memory == KERNEL + 32 * fp_params

    larq_profile = lq.models.ModelProfile(model)
    assert larq_profile.weight_count(1) == KERNEL and larq_profile.weight_count(32) == fp_params
    assert larq_profile.op_count("mac", 1) == KERNEL * PIXELS
    assert larq_profile.op_count("mac", 32) == larq_fp_macs
