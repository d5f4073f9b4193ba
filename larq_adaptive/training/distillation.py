"""Knowledge distillation as ReActNet does it (``KD_loss.DistributionLoss`` of the official code).

    L = mean_n ( - sum_c softmax(z_T)_{n,c} log softmax(z_S)_{n,c} )

soft targets from a frozen teacher evaluated on the *same augmented batch* (resized if the
teacher takes another input size), no temperature,
no hard-label term. :class:`Distiller` wraps a student so that ``model.fit`` trains it with
that loss while ``evaluate``/validation use the compiled hard-label loss and metrics.
"""

import tensorflow as tf

__all__ = ["Distiller", "loss_dtype", "soft_target_cross_entropy"]


def loss_dtype(*dtypes):
    """float64 if any of ``dtypes`` is float64 (a float64 model keeps its precision), else
    float32 (mixed-precision float16/bfloat16 logits are lifted)."""
    return tf.float64 if any(tf.as_dtype(d) == tf.float64 for d in dtypes) else tf.float32


def soft_target_cross_entropy(teacher_logits, student_logits):
    """Per-example cross-entropy of the student against the teacher's softmax (float32, or
    float64 if either input is float64)."""
    dtype = loss_dtype(teacher_logits.dtype, student_logits.dtype)
    targets = tf.nn.softmax(tf.cast(teacher_logits, dtype), axis=-1)
    log_probs = tf.nn.log_softmax(tf.cast(student_logits, dtype), axis=-1)
    return -tf.reduce_sum(targets * log_probs, axis=-1)


class Distiller(tf.keras.Model):
    """``student`` trained on ``teacher``'s soft targets; the teacher is frozen
    (``trainable=False``, called with ``training=False``). Compile it like the student
    (hard-label loss and metrics for validation); the compiled metrics also track the
    training batches' hard labels. The student's own losses (weight decay) are added."""

    def __init__(self, student, teacher, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.kd_loss = tf.keras.metrics.Mean(name="kd_loss")

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        return super().metrics + [self.kd_loss]

    def _teacher_view(self, images):
        """The batch at the teacher's input size (bilinear resize if it differs)."""
        size = tuple(self.teacher.input_shape[1:3])
        if None in size or tuple(images.shape[1:3]) == size:
            return images
        return tf.image.resize(images, size)

    def train_step(self, data):
        images, labels = data[0], data[1]
        teacher_logits = tf.stop_gradient(self.teacher(self._teacher_view(images), training=False))
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)
            per_example = soft_target_cross_entropy(teacher_logits, logits)
            loss = tf.nn.compute_average_loss(per_example)
            if self.student.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
        self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
        self.kd_loss.update_state(per_example)
        self.compiled_metrics.update_state(labels, logits)
        return {**self._compiled_results(), "loss": self.kd_loss.result()}

    def test_step(self, data):
        images, labels = data[0], data[1]
        logits = self.student(images, training=False)
        self.compiled_loss(labels, logits, regularization_losses=self.student.losses)
        self.compiled_metrics.update_state(labels, logits)
        return self._compiled_results()

    def _compiled_results(self):
        return {m.name: m.result() for m in super().metrics}
