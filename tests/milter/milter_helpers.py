"""Small messages for the milter's tests."""

from __future__ import annotations

from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText


def build_message(test_id: str, subject: str, text: str = "Please find the file attached.\r\n",
                  attachment: tuple[str, bytes] | None = None, size_pad: int = 0) -> bytes:
    msg = MIMEMultipart() if attachment else MIMEText(text + "x" * size_pad, "plain", "us-ascii")
    if attachment:
        msg.attach(MIMEText(text, "plain", "us-ascii"))
        name, data = attachment
        part = MIMEApplication(data, Name=name)
        part["Content-Disposition"] = f'attachment; filename="{name}"'
        msg.attach(part)
    msg["From"] = "Sender <sender@outside.test>"
    msg["To"] = "user@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{test_id}@outside.test>"
    msg["X-Test-Id"] = test_id
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
