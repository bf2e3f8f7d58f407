"""Camera sources: OctoPrint webcams, snapshot URLs, MJPEG streams, the fake camera and
the camera test."""
