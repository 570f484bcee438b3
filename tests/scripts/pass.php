<?php
// Test validate script: accepts every recipient.
echo "PASS";
