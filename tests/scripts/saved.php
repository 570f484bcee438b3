<?php
// Test save script: accepts every message without storing it.
echo "SAVED";
