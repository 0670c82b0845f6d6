"""The transport for large images: the node's own choice, the profile command for camera drivers."""

from __future__ import annotations

from ssvif_ros.tools import dds


def test_the_shared_memory_profile_is_used_unless_told_otherwise(tmp_path):
    env: dict[str, str] = {}
    line = dds.choose_transport(env, tmp_path)
    assert env[dds.FASTDDS_PROFILE_VARIABLE] == str(tmp_path / "fastdds_shm.xml")
    assert (tmp_path / "fastdds_shm.xml").read_text() == dds.FASTDDS_SHM_PROFILE
    assert line.startswith("Fast DDS shared memory for large images")
    own = {dds.FASTDDS_PROFILE_VARIABLE: "/etc/robot/fastdds.xml"}
    assert dds.choose_transport(own, tmp_path / "x") == "the Fast DDS profile /etc/robot/fastdds.xml"
    assert own == {dds.FASTDDS_PROFILE_VARIABLE: "/etc/robot/fastdds.xml"}  # the user's profile is kept
    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert "rmw_cyclonedds_cpp with its own transport" in dds.choose_transport(cyclone, tmp_path / "y")
    assert dds.FASTDDS_PROFILE_VARIABLE not in cyclone and not (tmp_path / "y").exists()


def test_an_unwritable_folder_leaves_the_defaults_and_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    env: dict[str, str] = {}
    line = dds.choose_transport(env, blocker / "sub")
    assert line.startswith("Fast DDS defaults (large images may be lost")
    assert env == {}


def test_the_profile_command_writes_it_and_prints_the_export_line(tmp_path, capsys):
    assert dds.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"export {dds.FASTDDS_PROFILE_VARIABLE}={tmp_path / 'fastdds_shm.xml'}"
    assert (tmp_path / "fastdds_shm.xml").read_text() == dds.FASTDDS_SHM_PROFILE
    assert dds.main(["--print"]) == 0
    assert capsys.readouterr().out == dds.FASTDDS_SHM_PROFILE
    assert dds.main(["--out", str(tmp_path / "fastdds_shm.xml" / "x")]) == 2  # under a file: one-line error
    assert capsys.readouterr().err.startswith("ssvif-dds-profile: error: cannot write the profile")
