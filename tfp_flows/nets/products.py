"""Matrix products with gradients in the forms XLA:CPU runs fast (same values as `tf.matmul`).

One home for the products of the library's dense networks (`nets.mlp.dense`: MLP,
MADE) and of FFJORD's vector field (`nets.ODENet`). On XLA:CPU the two gradient
products of a dense layer can cost far more than their FLOPs: a kernel's gradient
`x^T dy` contracts the batch into a small result (about half the rate of the
forward product), and a thin `[H, D]` kernel's gradients (few columns, the output
layer of a low-dimensional flow) are among the slowest dots. `matmul` picks, by the
kernel's static shape, `thin_matmul` (at most `THIN` columns), `wide_matmul` (more
than `THIN` rows and columns) or plain `tf.matmul`; each has a hand-written
gradient with the same values (checked against `tf.matmul` in the tests).
`ODENet` uses all three; `dense` only the thin one (`wide=False`): the chunked batch
contraction made the discrete flows' 64-D steps slower, while it speeds up the
adjoint solves of FFJORD's field (docs/performance.md).
"""

import tensorflow as tf

# Kernels with at most this many columns (the output layer of a low-dimensional field) take
# `thin_matmul`, those with more rows and columns `wide_matmul`, and `exact_trace` forms
# `W_2 W_0` over at most this many rows by broadcasting.
THIN = 8


def thin_product(a, b):
    """`a @ b` for a thin `[H, D] x [D, H']` product, `D <= THIN`: a sum of `D` outer products.

    XLA:CPU runs the dot's gradient `g @ b^T` (a `[H, H'] x [D, H']` product contracting
    the wide dimension, into a thin `[H, D]` result) far slower than its FLOPs; the
    broadcast sum's gradients are elementwise products and short reductions.
    """
    out = a[:, :1] * b[:1]
    for d in range(1, int(a.shape[-1])):
        out = out + a[:, d:d + 1] * b[d:d + 1]
    return out


@tf.custom_gradient
def thin_matmul(x, kernel):
    """`x @ kernel` for a `[H, D]` kernel with `D <= THIN` columns (the same product).

    The gradients are computed in forms XLA:CPU runs fast. TF's `dy @ kernel^T`
    (contracting the thin dimension of a transposed operand) and `x^T @ dy` (a
    thin `[H, D]` result contracted over the batch) are among XLA:CPU's slowest
    dots: in the adjoint's backward solve each cost about as much as an
    `[N, H] x [H, H]` product. Here `dx` is a sum of `D` broadcast products
    (elementwise: it fuses into its consumer) and `dkernel` is the wide-result
    product `dy^T x` (`[D, H]`), whose `D` rows are stacked as columns. (Not
    `D` matrix-vector products `x^T dy[:, d]`: XLA fuses `x`'s elementwise
    producer, e.g. the Hutchinson tangent's `dh * act'(a)`, into such a product
    and runs the fusion as a plain loop, 40 us a call.)
    """
    def grad(dy):
        width = int(kernel.shape[-1])
        dx = dy[:, :1] * kernel[:, 0]
        for d in range(1, width):
            dx = dx + dy[:, d:d + 1] * kernel[:, d]
        # Rows of the [D, H] product stacked as columns: not a transpose, which XLA
        # would fold back into the slow `x^T dy` dot.
        dkernel_t = tf.matmul(dy, x, transpose_a=True)
        dkernel = tf.stack([dkernel_t[d] for d in range(width)], axis=1)
        return dx, dkernel

    return tf.matmul(x, kernel), grad


# The batch contraction of a wide kernel's gradient runs as this many batched chunks.
CHUNKS = 4


def batch_contraction(x, dy):
    """`x^T dy` (`[N, H] x [N, H'] -> [H, H']`) as `CHUNKS` batched products, summed.

    XLA:CPU runs the plain dot (contracting both operands' batch dimension into a
    small `[H, H']` result) at about half the rate of a forward `[N, H] x [H, H']`
    product; split into row chunks (zero rows padded to a multiple of
    `CHUNKS`) it runs almost twice as fast. The same sum, in another order.
    """
    rows = x.shape[0]
    if rows is None or rows % CHUNKS:
        pad = tf.math.floormod(-tf.shape(x)[0], CHUNKS)
        x = tf.pad(x, [[0, pad], [0, 0]])
        dy = tf.pad(dy, [[0, pad], [0, 0]])
    x = tf.reshape(x, [CHUNKS, -1, int(x.shape[-1])])
    dy = tf.reshape(dy, [CHUNKS, -1, int(dy.shape[-1])])
    return tf.reduce_sum(tf.matmul(x, dy, transpose_a=True), axis=0)


@tf.custom_gradient
def wide_matmul(x, kernel):
    """`x @ kernel` for a kernel with more than `THIN` rows and columns (the same product).

    The kernel's gradient `x^T dy` is `batch_contraction`; `dx = dy kernel^T` as TF's.
    """
    def grad(dy):
        return tf.matmul(dy, kernel, transpose_b=True), batch_contraction(x, dy)

    return tf.matmul(x, kernel), grad


def matmul(x, kernel, wide=True):
    """`x @ kernel` (`[N, I] x [I, J]`), by the kernel's static shape: `thin_matmul`,
    `wide_matmul` (if `wide`) or `tf.matmul` (see the module docstring)."""
    kernel = tf.convert_to_tensor(kernel)
    if kernel.shape[-1] is not None and kernel.shape[-1] <= THIN:
        return thin_matmul(x, kernel)
    if wide and kernel.shape[0] is not None and kernel.shape[0] > THIN:
        return wide_matmul(x, kernel)
    return tf.matmul(x, kernel)
