"""The built-in synthetic speech corpus (``s3l prep synth``), spoken by espeak-ng.

Modules: :mod:`~s3l.synth.espeak` (ctypes binding; the only importer of the GPL-3 ``espeakng-loader``),
:mod:`~s3l.synth.vocab`, :mod:`~s3l.synth.lexicon`, :mod:`~s3l.synth.numbers` and :mod:`~s3l.synth.grammar`
(sentences), :mod:`~s3l.synth.phones` (mnemonics -> 40 phones, frame labels), :mod:`~s3l.synth.voices`
(accents, variants, speakers), :mod:`~s3l.synth.worker` (one shard of audio) and :mod:`~s3l.synth.corpus`
(splits, manifests, ``lm.txt``, summary).
"""
