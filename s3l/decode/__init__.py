"""CTC decoding: greedy and KenLM beam search over emissions (``ctc``), stored emissions (``emissions``),
LM weight / word score search (``tune``), and the ``s3l decode`` command (``run``)."""
