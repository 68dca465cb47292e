"""The lab: everything that stands in for the outside world, kept apart from the product.

* :mod:`mediasrv.lab.emulators`: wire-compatible local Telnyx (Call Control, webhooks and the
  simulated caller), Soniox, ElevenLabs and OpenAI/Anthropic servers with latency profiles;
* :mod:`mediasrv.lab.emulated`: those emulators started in-process as agent-mode providers
  (``serve --emulate`` and the demo);
* :mod:`mediasrv.lab.demo`: ``mediasrv demo``, the daemon against the emulators and a caller;
* :mod:`mediasrv.lab.scripted_stt`: the Soniox emulator core fed a recording, for
  ``mediasrv turns --labels``.

Rule: the product (every other module of :mod:`mediasrv`) never imports the lab. The CLI's lab
commands import it inside the function that runs them; ``tests/test_layers.py`` checks both.
"""
