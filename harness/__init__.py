"""The test kit every suite shares: plug files, processes, fakes, client, report (README.md)."""
