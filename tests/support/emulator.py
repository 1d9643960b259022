"""The emulator for tests (``workers.lab.services.running_emulator``)::

    with running_emulator(tmp_path / "emu", api_key="k", args=["--seed", "7"]) as emu:
        emu.url, emu.api_key, emu.data_dir, emu.proc
        emu.create_upload_token(), emu.videos(), emu.video(id), emu.set_faults(...), emu.faults(),
        emu.reset(), emu.requests_log()          # see emulator.client.EmulatorClient

More accounts: ``running_emulator(dir, api_key="a", api_keys=["b", "c"])``; then
``emu.api_keys``, ``emu.accounts()``, ``emu.for_key("b")`` (a client of account b),
``emu.account`` (an id) and ``account=`` on ``videos``, ``requests_log`` and ``reset``.
"""

from emulator.client import basic_auth
from workers.lab.services import EmulatorProcess as Emulator
from workers.lab.services import running_emulator

__all__ = ["Emulator", "basic_auth", "running_emulator"]
