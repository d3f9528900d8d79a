"""Training components shared by ``s3l pretrain`` and ``s3l finetune``: data pipeline, optimizer and schedules,
and the one training loop (:func:`s3l.train.loop.train`) driven by a small :class:`~s3l.train.loop.Task`."""
