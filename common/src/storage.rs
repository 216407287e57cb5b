//! Object storage: the bucket handle from settings (the layout is
//! `domain::layout`).

use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, BucketConfiguration, Region};

use crate::settings::S3Settings;

pub fn bucket(s: &S3Settings) -> Result<Box<Bucket>, S3Error> {
    let bucket = Bucket::new(&s.bucket, region(s), credentials(s)?)?;
    Ok(bucket.with_path_style())
}

fn region(s: &S3Settings) -> Region {
    Region::Custom {
        region: s.region.clone(),
        endpoint: s.endpoint.clone(),
    }
}

fn credentials(s: &S3Settings) -> Result<Credentials, S3Error> {
    Ok(Credentials::new(
        Some(s.access_key.expose()),
        Some(s.secret_key.expose()),
        None,
        None,
        None,
    )?)
}

/// Creates the bucket unless it exists.
pub async fn ensure_bucket(s: &S3Settings) -> Result<(), S3Error> {
    let created = Bucket::create_with_path_style(
        &s.bucket,
        region(s),
        credentials(s)?,
        BucketConfiguration::default(),
    )
    .await;
    match created {
        Ok(_) => Ok(()),
        Err(S3Error::HttpFailWithBody(409, _)) => Ok(()),
        Err(e) => Err(e),
    }
}
